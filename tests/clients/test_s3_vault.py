"""The document vault on an S3-compatible bucket: a real S3 server (moto in server mode) on
loopback, the node configured with `MEDMESH_BLOB_STORE=s3://...`, and boto3 looking into the
bucket behind the node's back. Documents go up and come back whole, large ones through S3
multipart uploads; the bucket holds only ciphertext under names that say nothing; identical
uploads are stored once; no staging object is left behind."""

import hashlib
import os

import pytest
import requests

from conftest import Node, aws_client

BUCKET = "medmesh-vault-test"
MARKER = b"S3-VAULT-MARKER-91c2"


@pytest.fixture(scope="module")
def s3(moto_endpoint):
    client = aws_client("s3", moto_endpoint)
    client.create_bucket(Bucket=BUCKET)
    return moto_endpoint, client


@pytest.fixture(params=["sqlite", "postgres"])
def s3_node(request, s3):
    endpoint, client = s3
    # Each node gets a bucket of its own, so listings belong to one test.
    bucket = f"{BUCKET}-{request.param}-{os.urandom(4).hex()}"
    client.create_bucket(Bucket=bucket)
    node = Node(
        request.param,
        extra_env={
            "MEDMESH_BLOB_STORE": f"s3://{bucket}",
            "MEDMESH_S3_ENDPOINT": endpoint,
            "MEDMESH_S3_REGION": "us-east-1",
            "MEDMESH_S3_ACCESS_KEY_ID": "medmesh",
            "MEDMESH_S3_SECRET_ACCESS_KEY": "medmesh-secret",
        },
    )
    yield node, client, bucket
    node.close()


def pdf(size, salt=b""):
    head = b"%PDF-1.7\n% " + MARKER + b" " + salt + b"\n"
    body = hashlib.sha256(salt).digest() * (size // 32 + 1)
    return (head + body)[:size]


def objects(client, bucket):
    out = client.list_objects_v2(Bucket=bucket)
    return {o["Key"]: o["Size"] for o in out.get("Contents", [])}


def test_documents_live_sealed_in_the_bucket(s3_node):
    node, client, bucket = s3_node
    auth = {"Authorization": f"Bearer {node.token}"}
    r = requests.put(f"{node.url}/Patient/p1", json={"resourceType": "Patient", "id": "p1"}, headers=auth)
    assert r.status_code in (200, 201), r.text

    def upload(data):
        r = requests.post(
            f"{node.url}/Binary",
            data=data,
            headers={**auth, "Content-Type": "application/pdf", "X-Security-Context": "Patient/p1", "X-Medmesh-Title": "scan"},
        )
        assert r.status_code == 201, r.text
        return r.json()["id"], r.headers["X-Content-Id"]

    small = pdf(20_000, b"small")
    # 12 MiB: three S3 parts of 5 MiB at most.
    large = pdf(12 * 1024 * 1024 + 123, b"large")
    small_id, small_cid = upload(small)
    large_id, _ = upload(large)
    again_id, again_cid = upload(small)
    assert again_id != small_id and again_cid == small_cid

    stored = objects(client, bucket)
    assert len(stored) == 2, stored  # the repeated upload is stored once
    assert not any(k.startswith("staging/") for k in stored), stored
    for key in stored:
        assert "p1" not in key and small_cid not in key, key
        raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert MARKER not in raw and not raw.startswith(b"%PDF"), key
    assert sorted(stored.values())[1] > len(large), "the large blob is whole (sealed, so a little larger)"

    for binary, expected in [(small_id, small), (large_id, large), (again_id, small)]:
        r = requests.get(f"{node.url}/Binary/{binary}", headers=auth)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"] == "application/pdf"
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(expected).digest()

    # A blob altered in the bucket is never served whole.
    key = max(stored, key=stored.get)
    raw = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    raw[len(raw) // 2] ^= 1
    client.put_object(Bucket=bucket, Key=key, Body=bytes(raw))
    try:
        r = requests.get(f"{node.url}/Binary/{large_id}", headers=auth)
        assert r.content != large, "a tampered blob came back as the document"
    except requests.exceptions.ChunkedEncodingError:
        pass  # the download broke off, as it should
