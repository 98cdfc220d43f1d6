//! `medmesh doc ...`: the document client's commands.

use crate::cli::*;
use crate::doc;

/// Runs a `doc` command.
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
        } => doc::keygen(&key_file, &owner, recovery_file.as_deref())?,
        DocCommand::Register {
            node,
            key_file,
            recovery_file,
        } => {
            let recovery = recovery_file
                .as_deref()
                .map(doc::KeyFile::read)
                .transpose()?;
            doc::register(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                recovery.as_ref(),
            )
            .await?;
        }
        DocCommand::Upload {
            node,
            key_file,
            meta: m,
            content_type,
            file,
        } => {
            doc::upload(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &file,
                &meta(m, content_type),
            )
            .await?;
        }
        DocCommand::Seal {
            node,
            key_file,
            meta: m,
            to,
            file,
        } => {
            doc::seal(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &file,
                &meta(m, None),
                &to,
            )
            .await?;
        }
        DocCommand::Share {
            node,
            key_file,
            binary,
            to,
        } => {
            doc::share(
                &client(&node)?,
                &doc::KeyFile::read(&key_file)?,
                &binary,
                &to,
            )
            .await?
        }
        DocCommand::Shares { node, binary } => doc::shares(&client(&node)?, &binary).await?,
        DocCommand::Revoke { node, binary, from } => {
            return doc::revoke(&client(&node)?, &binary, &from).await;
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
        DocCommand::Verify { node, binary } => {
            return doc::verify_remote(&client(&node)?, &binary).await;
        }
    }
    Ok(true)
}
