"""Secret (core/v1): opaque and typed key/value data, the store of TLS certificates for Ingress.

From pkg/apis/core/validation (ValidateSecret, ValidateSecretUpdate), SetDefaults_Secret and
pkg/registry/core/secret/strategy.go. `stringData` is write-only, as in Kubernetes: the
strategy merges it into `data` (its keys win) on create and update and never stores it, so a
reader only ever sees `data`. `data` holds raw bytes; JSON carries them base64-encoded.
"""
from __future__ import annotations

import json

from kubemu.apiserver import validation as v
from kubemu.apiserver.registry.generic import ObjectStrategy
from kubemu.errors import FieldError, forbidden, invalid, required, too_long
from kubemu.v1 import objects_pb2 as pb

OPAQUE = "Opaque"
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
DOCKERCFG = "kubernetes.io/dockercfg"
DOCKER_CONFIG_JSON = "kubernetes.io/dockerconfigjson"
BASIC_AUTH = "kubernetes.io/basic-auth"
SSH_AUTH = "kubernetes.io/ssh-auth"
TLS = "kubernetes.io/tls"

SERVICE_ACCOUNT_NAME_KEY = "kubernetes.io/service-account.name"
DOCKERCFG_KEY = ".dockercfg"
DOCKER_CONFIG_JSON_KEY = ".dockerconfigjson"
BASIC_AUTH_USERNAME_KEY = "username"
BASIC_AUTH_PASSWORD_KEY = "password"
SSH_AUTH_PRIVATE_KEY = "ssh-privatekey"
TLS_CERT_KEY = "tls.crt"
TLS_PRIVATE_KEY_KEY = "tls.key"

MAX_SECRET_SIZE = 1 * 1024 * 1024
IMMUTABLE_WHEN_SET = "field is immutable when `immutable` is set"
REDACTED = "<secret contents redacted>"


def merge_string_data(secret: pb.Secret) -> None:
    """Fold the write-only stringData into data, as Kubernetes' conversion does."""
    for k, value in secret.stringData.items():
        secret.data[k] = value.encode()
    secret.ClearField("stringData")


def _valid_json(raw: bytes) -> str | None:
    """The reason `raw` is not a JSON object, or None."""
    try:
        parsed = json.loads(raw)
    except ValueError as e:
        return str(e)
    return None if isinstance(parsed, dict) else "json: cannot unmarshal into a map"


def validate_secret(secret: pb.Secret) -> list[FieldError]:
    errs: list[FieldError] = []
    total = 0
    for key in sorted(secret.data):
        errs += v.validate_each(f"data[{key}]", key, v.is_config_map_key(key))
        total += len(secret.data[key])
    if total > MAX_SECRET_SIZE:
        errs.append(too_long("data", MAX_SECRET_SIZE))

    t, data = secret.type, secret.data
    if t == SERVICE_ACCOUNT_TOKEN:
        if not secret.metadata.annotations.get(SERVICE_ACCOUNT_NAME_KEY):
            errs.append(required(f"metadata.annotations[{SERVICE_ACCOUNT_NAME_KEY}]"))
    elif t in (DOCKERCFG, DOCKER_CONFIG_JSON):
        key = DOCKERCFG_KEY if t == DOCKERCFG else DOCKER_CONFIG_JSON_KEY
        if key not in data:
            errs.append(required(f"data[{key}]"))
        elif (reason := _valid_json(data[key])) is not None:
            errs.append(invalid(f"data[{key}]", REDACTED, reason))
    elif t == BASIC_AUTH:
        # Kubernetes builds these paths with field.NewPath("data[%s]").Key(...): the
        # literal "%s" is in its messages, and so it is here.
        if BASIC_AUTH_USERNAME_KEY not in data and BASIC_AUTH_PASSWORD_KEY not in data:
            errs.append(required(f"data[%s][{BASIC_AUTH_USERNAME_KEY}]"))
            errs.append(required(f"data[%s][{BASIC_AUTH_PASSWORD_KEY}]"))
    elif t == SSH_AUTH:
        if not data.get(SSH_AUTH_PRIVATE_KEY):
            errs.append(required(f"data[%s][{SSH_AUTH_PRIVATE_KEY}]"))
    elif t == TLS:
        for key in (TLS_CERT_KEY, TLS_PRIVATE_KEY_KEY):
            if key not in data:
                errs.append(required(f"data[{key}]"))
    return errs


class SecretStrategy(ObjectStrategy):
    kind = "Secret"

    def default(self, obj: pb.Secret) -> None:
        if not obj.type:
            obj.type = OPAQUE
        merge_string_data(obj)

    def validate_spec(self, obj: pb.Secret) -> list[FieldError]:
        return validate_secret(obj)

    def validate_spec_update(self, new: pb.Secret, old: pb.Secret) -> list[FieldError]:
        errs = v.validate_immutable(new.type, old.type, "type")
        if old.immutable:
            if not new.immutable:
                errs.append(forbidden("immutable", IMMUTABLE_WHEN_SET))
            if dict(new.data) != dict(old.data):
                errs.append(forbidden("data", IMMUTABLE_WHEN_SET))
        return errs
