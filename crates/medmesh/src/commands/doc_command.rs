//! `medmesh doc ...` and `medmesh verify`: the document client's commands, on
//! `medmesh-doc-client`; this module only prints what the client did.

use medmesh_doc_client as doc;

use crate::cli::*;

/// Runs a `doc` command. `Ok(false)` is a refusal the user should see as a non-zero exit
/// (nothing to revoke, a signature that does not hold).
pub(crate) async fn run_doc(command: DocCommand) -> anyhow::Result<bool> {
    let client = |n: &NodeArgs| doc::NodeClient::new(&n.node, &n.token);
    let meta = |m: UploadArgs, content_type: Option<String>| doc::UploadMeta {
        patient: m.patient,
        title: m.title,
        doc_type: m.doc_type,
        content_type,
    };
    match command {
        DocCommand::Keygen {
            key_file,
            owner,
            recovery_file,
        } => {
            let made = doc::keygen(&key_file, &owner, recovery_file.as_deref())?;
            outln!("signing key {}", made.signing);
            outln!("sealing key {}", made.sealing);
            if let Some(recovery) = made.recovery {
                outln!("recovery key {recovery}");
            }
        }
        DocCommand::Register {
            node,
            key_file,
            recovery_file,
        } => {
            let recovery = recovery_file
                .as_deref()
                .map(doc::KeyFile::read)
                .transpose()?;
            let registered = doc::register(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                recovery.as_ref(),
            )
            .await?;
            for (kind, key_id) in registered {
                outln!("{kind} key {key_id}");
            }
        }
        DocCommand::Upload {
            node,
            key_file,
            meta: m,
            content_type,
            file,
        } => {
            let id = doc::upload(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &file,
                &meta(m, content_type),
            )
            .await?;
            outln!("{id}");
        }
        DocCommand::Seal {
            node,
            key_file,
            meta: m,
            to,
            file,
        } => {
            let id = doc::seal(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &file,
                &meta(m, None),
                &to,
            )
            .await?;
            outln!("{id}");
        }
        DocCommand::Share {
            node,
            key_file,
            binary,
            to: recipient,
        } => {
            let keys = doc::share(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &binary,
                &recipient,
            )
            .await?;
            for key_id in keys {
                outln!("shared with {recipient} (key {key_id})");
            }
        }
        DocCommand::Shares { node, binary } => {
            for s in doc::shares(&client(&node)?, &binary).await? {
                outln!(
                    "{} (key {}), shared by {}",
                    s.recipient,
                    s.recipient_key_id,
                    s.added_by
                );
            }
        }
        DocCommand::Revoke { node, binary, from } => {
            let revoked = doc::revoke(&client(&node)?, &binary, &from).await?;
            if revoked == 0 {
                eprintln!("medmesh: {from} holds no key for this document");
                return Ok(false);
            }
            outln!(
                "revoked {revoked} key(s) of {from}; what they already downloaded stays with them"
            );
        }
        DocCommand::Open {
            node,
            key_file,
            binary,
            out,
        } => {
            doc::open(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &binary,
                &out,
            )
            .await?
        }
        DocCommand::SignPrescription { node, key_file, id } => {
            let active =
                doc::sign_prescription(&client(&node)?, &doc::KeyFile::read(&key_file)?, &id)
                    .await?;
            outln!(
                "signed MedicationRequest/{id}: {}",
                active["status"].as_str().unwrap_or("?")
            );
        }
        DocCommand::Verify { node, binary } => {
            return Ok(report(doc::verify_remote(&client(&node)?, &binary).await?));
        }
    }
    Ok(true)
}

/// `medmesh verify FILE --provenance P`.
pub(crate) async fn verify_file(
    file: &std::path::Path,
    provenance: &std::path::Path,
    key: Option<&str>,
) -> anyhow::Result<bool> {
    Ok(report(doc::verify_file(file, provenance, key).await?))
}

/// `medmesh verify-prescription SIGNED [--directory D] [--prescription P]`, offline.
pub(crate) fn verify_prescription(
    signed: &std::path::Path,
    directory: Option<&std::path::Path>,
    prescription: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    use anyhow::Context;
    let json = |p: &std::path::Path| -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(
            &std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
        )
        .with_context(|| format!("{} is not JSON", p.display()))
    };
    let payload = json(signed)?;
    let request = prescription.map(json).transpose()?;
    // The directory's keys are the prescriber's as the signed text names them; which
    // prescriber that is comes from the text, checked by the signature first.
    let unchecked = medmesh_medications::service::verify_signed(&payload, None, None);
    let keys = match (&directory, &unchecked) {
        (Some(d), Ok(v)) => Some(
            doc::verified_entries(&v.claims.prescriber, &json(d)?, &["signing"])
                .into_iter()
                .map(|(_, _, key)| key)
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    match medmesh_medications::service::verify_signed(&payload, keys.as_deref(), request.as_ref()) {
        Ok(v) => {
            let c = &v.claims;
            outln!(
                "verified: {} signed {} for {} at {}: {} ({}), {}; quantity {}, refills {}, substitution {}; key {}",
                c.prescriber,
                c.prescription,
                c.patient,
                c.time,
                c.medication_text,
                c.medication,
                c.dosage,
                c.quantity,
                c.refills,
                c.substitution,
                v.key
            );
            if directory.is_none() {
                outln!("(the key was not checked against a directory: pass --directory)");
            }
            Ok(true)
        }
        Err(e) => {
            eprintln!("medmesh: NOT verified: {e}");
            Ok(false)
        }
    }
}

/// Prints a verdict; `true` when the signature holds.
fn report(verdict: doc::Verification) -> bool {
    match verdict {
        doc::Verification::Verified(v) => {
            outln!("verified: {}", v.summary());
            true
        }
        doc::Verification::NotVerified(why) => {
            eprintln!("medmesh: NOT verified: {why}");
            false
        }
    }
}
