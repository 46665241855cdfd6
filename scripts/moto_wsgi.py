# WSGI entry point for the local S3 test server: moto's server app for all
# services, with every request handled under one global lock so that
# conditional writes (If-None-Match / If-Match) are atomic.
# Run as: gunicorn --chdir scripts moto_wsgi:app   (see scripts/s3-server.sh)
import io
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    create_backend_app,
)

_inner = DomainDispatcherApplication(create_backend_app)
_lock = threading.Lock()
_raw_uri = None  # request target exactly as sent; only touched under _lock


def _patch_s3_signature_check():
    # moto checks S3 SigV4 signatures against the URL as re-quoted by werkzeug,
    # so keys containing e.g. + = : , @ ! ( ) $ % or non-ASCII fail with
    # SignatureDoesNotMatch. Check against the raw request target instead.
    try:
        from moto.iam.access_control import S3IAMRequest
    except ImportError:
        return
    orig = S3IAMRequest._create_aws_request

    def _create_aws_request(self):
        if _raw_uri:
            self._path = _raw_uri
        return orig(self)

    S3IAMRequest._create_aws_request = _create_aws_request


_patch_s3_signature_check()


def app(environ, start_response):
    global _raw_uri
    # Read the request body before taking the lock, so a slow client cannot
    # stall everybody else.
    stream = environ.get("wsgi.input")
    if stream is not None:
        body = stream.read()
        declared = environ.get("CONTENT_LENGTH")
        if declared and declared.isdigit() and len(body) != int(declared):
            # A client that died mid-body (killed, cut off): S3 stores nothing and answers
            # IncompleteBody, where moto would store the bytes that arrived.
            start_response("400 Bad Request", [("Content-Type", "application/xml")])
            return [b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>IncompleteBody"
                    b"</Code><Message>You did not provide the number of bytes specified by the "
                    b"Content-Length HTTP header</Message></Error>"]
        environ["wsgi.input"] = io.BytesIO(body)
        if not declared:
            environ["CONTENT_LENGTH"] = str(len(body))
    with _lock:
        _raw_uri = environ.get("RAW_URI")
        result = _inner(environ, start_response)
        try:
            # Produce the whole response body while still holding the lock.
            out = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    return [out]
