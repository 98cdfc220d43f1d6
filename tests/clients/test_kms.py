"""The key-encryption key in an external key service: AWS KMS's API, served by moto on
loopback. Data keys are wrapped by KMS `Encrypt` (no key file is written), a restarted node
unwraps them through `Decrypt`, `keys rotate` moves them to a new KMS key, and once the KMS
service is unreachable the node fails closed instead of serving anything."""

import os

import pytest
import requests

from conftest import Node, aws_client

CREDS = {"MEDMESH_KMS_ACCESS_KEY_ID": "medmesh", "MEDMESH_KMS_SECRET_ACCESS_KEY": "medmesh-secret", "MEDMESH_KMS_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def kms(moto_endpoint):
    return moto_endpoint, aws_client("kms", moto_endpoint)


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_data_keys_live_in_kms(kms, db):
    endpoint, client = kms
    first = client.create_key(Description="medmesh KEK 1")["KeyMetadata"]["KeyId"]
    node = Node(db, extra_env={**CREDS, "MEDMESH_KMS_ENDPOINT": endpoint, "MEDMESH_KMS_KEY_ID": first})
    try:
        auth = {"Authorization": f"Bearer {node.token}"}
        patient = {"resourceType": "Patient", "id": "k1", "name": [{"family": "Kmstestfamily"}]}
        r = requests.put(f"{node.url}/Patient/k1", json=patient, headers=auth)
        assert r.status_code in (200, 201), r.text
        assert not os.path.exists(os.path.join(node.dir.name, "master.key")), "no key file with KMS"
        status = node.cli("keys", "status")
        assert status.returncode == 0, status.stderr
        assert f"KEK in KMS: kms:{first}" in status.stdout
        assert f"data keys wrapped under kms:{first}:" in status.stdout

        # A fresh process has no cached keys: it unwraps through KMS.
        node.restart()
        auth = {"Authorization": f"Bearer {node.token}"}
        r = requests.get(f"{node.url}/Patient/k1", headers=auth)
        assert r.status_code == 200 and r.json()["name"][0]["family"] == "Kmstestfamily", r.text

        # Rotation: a new KMS key takes over, and the first can then be disabled.
        second = client.create_key(Description="medmesh KEK 2")["KeyMetadata"]["KeyId"]
        rotated = node.cli("keys", "rotate", MEDMESH_KMS_KEY_ID=second)
        assert rotated.returncode == 0, rotated.stderr
        status = node.cli("keys", "status", MEDMESH_KMS_KEY_ID=second)
        assert f"kms:{first}:" not in status.stdout, status.stdout
        client.disable_key(KeyId=first)
        node.restart(MEDMESH_KMS_KEY_ID=second)
        auth = {"Authorization": f"Bearer {node.token}"}
        r = requests.get(f"{node.url}/Patient/k1", headers=auth)
        assert r.status_code == 200, r.text

        # Without KMS the node reveals nothing: it fails closed, refusing to start or
        # answering 500. (moto does not refuse Decrypt for a disabled key, so KMS is made
        # unreachable: a loopback port nothing listens on.)
        try:
            node.restart(MEDMESH_KMS_ENDPOINT="http://127.0.0.1:9")
        except AssertionError as e:
            assert "did not start" in str(e)
        else:
            r = requests.get(f"{node.url}/Patient/k1", headers={"Authorization": f"Bearer {node.token}"})
            assert r.status_code == 500, r.text
            assert "Kmstestfamily" not in r.text
    finally:
        node.close()
