//! Video visits among appointments: an Appointment whose `appointmentType` (or a
//! `serviceCategory`) is HL7 v3 ActCode `VR` (virtual) is held in a video room, joined at
//! [`join_path`] on the node (the telehealth capability's room; `docs/telehealth.md`).

use serde_json::Value;

/// HL7 v3 ActCode.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// A virtual encounter.
pub const VIRTUAL: &str = "VR";

/// Whether an Appointment is a video visit.
pub fn is_video_visit(appointment: &Value) -> bool {
    let has = |cc: &Value| {
        cc["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["system"] == ACT_CODE && c["code"] == VIRTUAL)
    };
    has(&appointment["appointmentType"])
        || appointment["serviceCategory"]
            .as_array()
            .into_iter()
            .flatten()
            .any(has)
}

/// On a video visit's Appointment: the room's address (`valueUrl`), written when it is booked.
pub const EXT_JOIN_URL: &str = "https://medmesh.dev/fhir/StructureDefinition/video-visit-url";

/// Puts the room's address (on `origin`) into a video visit's Appointment `id`, once.
pub fn with_join_url(appointment: &mut Value, origin: &str, id: &str) {
    if !is_video_visit(appointment) {
        return;
    }
    let url = format!("{}{}", origin.trim_end_matches('/'), join_path(id));
    let ext = serde_json::json!({"url": EXT_JOIN_URL, "valueUrl": url});
    match appointment
        .get_mut("extension")
        .and_then(Value::as_array_mut)
    {
        Some(list) => {
            list.retain(|e| e["url"] != EXT_JOIN_URL);
            list.push(ext);
        }
        None => appointment["extension"] = serde_json::json!([ext]),
    }
}

/// Where the room of appointment `id` is joined, on the node's origin.
pub fn join_path(id: &str) -> String {
    format!("/visits/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_virtual_appointment_type_makes_a_video_visit() {
        let vr = json!({"appointmentType": {"coding": [{"system": ACT_CODE, "code": "VR"}]}});
        assert!(is_video_visit(&vr));
        let by_category =
            json!({"serviceCategory": [{"coding": [{"system": ACT_CODE, "code": "VR"}]}]});
        assert!(is_video_visit(&by_category));
        assert!(!is_video_visit(
            &json!({"appointmentType": {"coding": [{"system": ACT_CODE, "code": "AMB"}]}})
        ));
        assert_eq!(join_path("a1"), "/visits/a1");
        let mut a = vr.clone();
        with_join_url(&mut a, "https://node.example.org/", "a1");
        with_join_url(&mut a, "https://node.example.org/", "a1");
        assert_eq!(a["extension"].as_array().unwrap().len(), 1);
        assert_eq!(
            a["extension"][0]["valueUrl"],
            "https://node.example.org/visits/a1"
        );
    }
}
