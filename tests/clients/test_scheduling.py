"""Appointment reminders against a real SMTP server on loopback (aiosmtpd): a reminder is
queued in the transaction that books the appointment, survives `kill -9` of the node between
booking and sending, and arrives exactly once; a cancelled appointment's reminder never
arrives; the mail names no patient data, no time and no practitioner."""

import datetime
import os
import subprocess
import time

import pytest
import requests

from conftest import BIN
from test_notifications import mail_node, wait_for

FAMILY = "Quellingham"


@pytest.fixture(params=["sqlite", "postgres"])
def clinic(request):
    # One reminder, 30 seconds before: the story runs in under a minute.
    n, inbox, smtp = mail_node(request.param, 'appointment_reminders = ["30s"]\n')
    yield n, inbox
    n.close()
    smtp.stop()
    os.unlink(n.env["MEDMESH_CONFIG"])


def instant(seconds_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def cli(node, *args, stdin_text=None):
    out = subprocess.run([BIN, *args, *node.args], capture_output=True, text=True, env=node.env, input=stdin_text)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def put(node, path, body):
    r = requests.put(f"{node.url}/{path}", json=body, headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert r.ok, r.text


def seed(node):
    put(node, "Practitioner/p1", {"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Ortega"}]})
    put(node, "Organization/h", {"resourceType": "Organization", "id": "h", "name": "General"})
    put(node, "Schedule/s1", {"resourceType": "Schedule", "id": "s1", "active": True,
                              "actor": [{"reference": "Practitioner/p1"}]})
    r = requests.post(f"{node.url}/Patient", json={"resourceType": "Patient", "name": [{"family": FAMILY}]},
                      headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert r.status_code == 201, r.text
    patient = r.json()["id"]
    cli(node, "notifications", "settings", "--patient", patient, "--email", "ada@example.org",
        "--choose", "appointments=inbox,email")
    return patient


def book_slot(node, slot_id, patient, start, end):
    """Writes a free Slot as a FHIR client would, and books it with $book."""
    put(node, f"Slot/{slot_id}", {"resourceType": "Slot", "id": slot_id, "status": "free",
                                  "schedule": {"reference": "Schedule/s1"}, "start": start, "end": end})
    appointment = {"resourceType": "Appointment", "status": "proposed", "start": start, "end": end,
                   "slot": [{"reference": f"Slot/{slot_id}"}],
                   "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]}
    r = requests.post(f"{node.url}/Appointment/$book",
                      json={"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": appointment}]},
                      headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    booked = r.json()["entry"][0]["resource"]
    assert booked["status"] == "booked" and booked["slot"] == [{"reference": f"Slot/{slot_id}"}]
    return booked["id"]


def test_a_reminder_survives_kill_9_and_arrives_once(clinic):
    node, inbox = clinic
    patient = seed(node)
    # Due 15 seconds from now (30 seconds before a visit 45 seconds from now).
    start = instant(45)
    book_slot(node, "soon", patient, start, instant(75))
    # Killed between booking and sending; started again on the same store.
    node.restart()
    wait_for(lambda: any("ada@example.org" in to for to, _ in inbox.messages), "the reminder", seconds=60)
    time.sleep(3)  # more outbox rounds, which must not send it again
    mails = [m for to, m in inbox.messages if "ada@example.org" in to]
    assert len(mails) == 1, [m["Subject"] for m in mails]
    mail = mails[0]
    assert mail["Subject"] == "Appointment reminder from Test Node"
    text = mail.get_payload(decode=True).decode()
    assert "You have an appointment in 30 seconds" in text
    for secret in (FAMILY, "Ortega", "Practitioner", patient, start[:16], start[11:16]):
        assert secret not in text and secret not in mail["Subject"], secret
    counts = cli(node, "notifications", "counts")
    assert "scheduled\tdelivered\t1" in counts and "email\tdelivered\t1" in counts, counts


def test_a_cancelled_appointments_reminder_never_arrives(clinic):
    node, inbox = clinic
    patient = seed(node)
    appointment = book_slot(node, "later", patient, instant(40), instant(70))
    r = requests.post(f"{node.base}/api/appointments/{appointment}/cancel", json={"reason": "better"},
                      headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    # The slot is free again, and the reminder withdrawn before it was due.
    slot = requests.get(f"{node.url}/Slot/later", headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert slot.json()["status"] == "free"
    counts = cli(node, "notifications", "counts")
    assert "scheduled\twithdrawn\t1" in counts, counts
    time.sleep(15)  # past when it was due
    assert not any("ada@example.org" in to for to, _ in inbox.messages)


def test_a_calendar_feed_is_icalendar_shows_what_its_owner_chose_and_can_be_revoked(clinic):
    """A patient's and a practitioner's private feeds, parsed by Python's `icalendar`: times
    only by default, names when chosen; a new link stops the old; a cancellation shows as
    cancelled; a revoked link answers 404."""
    import icalendar

    node, _ = clinic
    patient = seed(node)
    cli(node, "admin", "create-user", "--role", "patient", "--username", "ada", "--patient", patient, stdin_text="a long enough password 1\n")
    cli(node, "admin", "create-user", "--role", "practitioner", "--username", "ortega", "--practitioner", "p1",
        "--verification", "verified", stdin_text="a long enough password 1\n")
    ada = {"Authorization": "Bearer " + cli(node, "admin", "token", "--scope", "patient/*.rs", "--user", "ada").strip()}
    doc = {"Authorization": "Bearer " + cli(node, "admin", "token", "--scope", "user/*.rs", "--user", "ortega").strip()}

    def make(headers, detail):
        r = requests.post(f"{node.base}/api/account/calendar-feed", json={"detail": detail}, headers=headers, timeout=30)
        assert r.status_code == 201, r.text
        return r.json()["url"]

    def events(url):
        r = requests.get(url, timeout=30)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/calendar")
        assert "no-store" in r.headers["cache-control"]
        cal = icalendar.Calendar.from_ical(r.content)
        return r.text, [c for c in cal.walk() if c.name == "VEVENT"]

    busy = make(ada, "busy")
    start = instant(3600)
    appointment = book_slot(node, "feed", patient, start, instant(5400))
    text, evs = events(busy)
    assert len(evs) == 1
    ev = evs[0]
    assert str(ev["SUMMARY"]) == "Appointment"
    assert ev["UID"].startswith(appointment + "@")
    assert ev.decoded("DTSTART") == datetime.datetime.fromisoformat(start.replace("Z", "+00:00"))
    assert str(ev["STATUS"]) == "CONFIRMED"
    for secret in ("Ortega", FAMILY, patient):
        assert secret not in text, secret
    # A detailed link replaces the busy one, which stops working.
    detailed = make(ada, "detailed")
    assert requests.get(busy, timeout=30).status_code == 404
    _, evs = events(detailed)
    assert str(evs[0]["SUMMARY"]) == "Appointment with Ortega"
    # The practitioner's feed names the patient, when they choose so.
    _, evs = events(make(doc, "detailed"))
    assert str(evs[0]["SUMMARY"]) == f"Appointment: {FAMILY}"
    # A cancellation shows as cancelled; a revoked link is gone.
    r = requests.post(f"{node.base}/api/appointments/{appointment}/cancel", json={}, headers={"Authorization": f"Bearer {node.token}"}, timeout=30)
    assert r.status_code == 200, r.text
    _, evs = events(detailed)
    assert str(evs[0]["STATUS"]) == "CANCELLED"
    assert requests.delete(f"{node.base}/api/account/calendar-feed", headers=ada, timeout=30).status_code == 204
    assert requests.get(detailed, timeout=30).status_code == 404
    assert requests.get(f"{node.base}/feeds/not-a-token.ics", timeout=30).status_code == 404
    # Bad input: an unknown detail, and an account with no appointments of its own.
    r = requests.post(f"{node.base}/api/account/calendar-feed", json={"detail": "everything"}, headers=ada, timeout=30)
    assert r.status_code == 400
