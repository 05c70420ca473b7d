"""AWS clients and error wording shared by every job: one client factory, one-line explanations of boto errors,
and S3 calls that raise ``JobError`` with them.

Endpoint, region, CA bundle and credentials come from boto3's own configuration (AWS_ENDPOINT_URL, AWS_REGION,
AWS_CA_BUNDLE, the instance profile, ...) unless a job passes --endpoint-url/--region. Retries use botocore's
``standard`` mode (exponential backoff with jitter, throttling and transient errors; AWS_RETRY_MODE=adaptive adds
client-side rate limiting); the attempt count is botocore's (3, or AWS_MAX_ATTEMPTS).
"""

from __future__ import annotations

import json
import os

import boto3
import botocore.config
import botocore.exceptions

from .errors import JobError

# The exceptions a boto3 call raises for a remote or transport failure (not a bug of ours).
AWS_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)
_UNREACHABLE = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
)


def retry_mode() -> str:
    """botocore's retry mode: AWS_RETRY_MODE when set, else ``standard`` (botocore's own default is ``legacy``)."""
    return os.environ.get("AWS_RETRY_MODE") or "standard"


def make_client(service: str, endpoint_url: str | None, region: str | None, concurrency: int = 0):
    """A boto3 client for ``service``.

    S3 clients get a connection pool sized to ``concurrency`` (the transfer threads, plus the 4 threads that check
    files before it; never below botocore's 10) and long read timeouts; other services (CloudWatch Logs and
    metrics: telemetry that must not hold a job up) get short timeouts."""
    retries = {"mode": retry_mode()}  # no max_attempts here, so that AWS_MAX_ATTEMPTS still applies
    if service == "s3":
        config = botocore.config.Config(
            max_pool_connections=max(10, concurrency + 4),
            connect_timeout=10,
            read_timeout=120,
            retries=retries,
            # Every PutObject/UploadPart body carries its x-amz-checksum-sha256 (ChecksumAlgorithm=SHA256, computed
            # by botocore while sending), which S3 verifies against the body, so hashing each body once more for the
            # SigV4 payload signature adds no protection (botocore skips it over HTTPS when a checksum is present).
            s3={"payload_signing_enabled": False},
        )
    else:
        config = botocore.config.Config(connect_timeout=5, read_timeout=20, retries=retries)
    session = boto3.session.Session()
    return session.client(service, endpoint_url=endpoint_url or None, region_name=region or None, config=config)


def error_code(e: botocore.exceptions.ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def http_status(e: botocore.exceptions.ClientError) -> int:
    return int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def not_found(e: botocore.exceptions.ClientError) -> bool:
    """Whether a ClientError means "no such object" (HeadObject has no error body, only the status)."""
    return http_status(e) == 404 or error_code(e) in ("404", "NoSuchKey", "NotFound")


def explain(e: BaseException, bucket: str, endpoint: str | None, what: str = "") -> str:
    """One-line, actionable message for a boto/botocore exception."""
    where = f" ({what})" if what else ""
    if isinstance(e, botocore.exceptions.NoCredentialsError):
        return (
            "no AWS credentials found: on the node attach an instance profile (IAM role) to the instance, "
            "elsewhere set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
        )
    if isinstance(e, _UNREACHABLE):
        return (
            f"cannot reach the S3 endpoint {endpoint}{where}: {e} "
            "(check AWS_ENDPOINT_URL/--endpoint-url, AWS_REGION and the network)"
        )
    if isinstance(e, botocore.exceptions.ClientError):
        return _explain_client_error(e, bucket, endpoint, where)
    if isinstance(e, botocore.exceptions.BotoCoreError):
        return f"AWS client error{where}: {e}"
    return f"{type(e).__name__}: {e}{where}"


def _explain_client_error(e: botocore.exceptions.ClientError, bucket: str, endpoint: str | None, where: str) -> str:
    code, status = error_code(e), http_status(e)
    if code in ("NoSuchBucket",) or (status == 404 and code in ("404", "NotFound", "")):
        return f"bucket {bucket} does not exist (NoSuchBucket) at {endpoint}{where}"
    if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled") or status == 403:
        return (
            f"access denied to bucket {bucket}{where}: check that the node's IAM role (instance profile) allows "
            f"s3:ListBucket, s3:GetObject, s3:PutObject and s3:AbortMultipartUpload on it"
        )
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
        return f"AWS credentials rejected by S3{where}: {code}: {e.response.get('Error', {}).get('Message', '')}"
    if status == 301 or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
        region = e.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("x-amz-bucket-region", "?")
        return f"bucket {bucket} is in region {region}: set AWS_REGION/--region accordingly{where}"
    return f"S3 error on bucket {bucket}{where}: {code}: {e.response.get('Error', {}).get('Message', e)}"


class S3Bucket:
    """One bucket through one S3 client (shared by everything a run does): each call raises ``JobError`` with
    the one-line explanation of what went wrong."""

    def __init__(self, client, name: str):
        self.client = client
        self.name = name
        self.endpoint = client.meta.endpoint_url

    def error(self, e: BaseException, what: str = "") -> JobError:
        """The JobError for a boto exception raised while doing ``what`` on this bucket."""
        return JobError(explain(e, self.name, self.endpoint, what))

    def call(self, what: str, fn, **kwargs):
        """``fn(Bucket=<name>, **kwargs)``, a client method of this bucket."""
        try:
            return fn(Bucket=self.name, **kwargs)
        except AWS_ERRORS as e:
            raise self.error(e, what) from e

    def check(self, what: str = "HeadBucket") -> None:
        """HeadBucket: fails fast (before any work) on credentials, endpoint, bucket and permissions. ``what`` is
        the label in the message (upload's has always had none)."""
        self.call(what, self.client.head_bucket)

    def _unless_missing(self, what: str, fn, **kwargs):
        """``fn(Bucket=<name>, **kwargs)``, or None when the object does not exist; other failures raise."""
        try:
            return fn(Bucket=self.name, **kwargs)
        except botocore.exceptions.ClientError as e:
            if not_found(e):
                return None
            raise self.error(e, what) from e
        except botocore.exceptions.BotoCoreError as e:
            raise self.error(e, what) from e

    def head(self, key: str) -> dict | None:
        """HeadObject with checksums, None when there is no such object."""
        return self._unless_missing(f"HeadObject {key}", self.client.head_object, Key=key, ChecksumMode="ENABLED")

    def first_part_size(self, key: str) -> int | None:
        """ContentLength of part 1 of a multipart object (HeadObject PartNumber=1), None when it cannot be had."""
        try:
            return self.client.head_object(Bucket=self.name, Key=key, PartNumber=1).get("ContentLength")
        except AWS_ERRORS:
            return None

    def get_json(self, key: str) -> dict | None:
        """An object's JSON; None when it is missing or not JSON (not ours / damaged: callers rewrite it)."""
        obj = self._unless_missing(f"GetObject {key}", self.client.get_object, Key=key)
        if obj is None:
            return None
        try:
            body = obj["Body"].read()
        except AWS_ERRORS as e:  # the body streams after the response: a cut connection surfaces here
            raise self.error(e, f"GetObject {key}") from e
        try:
            return json.loads(body)
        except ValueError:
            return None

    def put_json(self, key: str, doc: dict) -> None:
        body = (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()
        self.call(
            f"PutObject {key}",
            self.client.put_object,
            Key=key,
            Body=body,
            ContentType="application/json",
            ChecksumAlgorithm="SHA256",
        )

    def list_keys(self, prefix: str) -> list[str]:
        what = f"ListObjectsV2 {prefix}"
        pages = self.call(what, self.client.get_paginator("list_objects_v2").paginate, Prefix=prefix)
        try:
            return [o["Key"] for page in pages for o in page.get("Contents", [])]
        except AWS_ERRORS as e:
            raise self.error(e, what) from e

    def delete(self, keys: list[str]) -> None:
        for i in range(0, len(keys), 1000):
            objs = [{"Key": k} for k in keys[i : i + 1000]]
            self.call("DeleteObjects", self.client.delete_objects, Delete={"Objects": objs, "Quiet": True})
