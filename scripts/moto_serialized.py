#!/usr/bin/env python3
"""moto's server, with every DynamoDB request handled one at a time.

moto checks a DynamoDB condition expression and then writes, with no lock
between the two, so two concurrent conditional writes can both succeed on
its threaded server. Real DynamoDB applies each conditional write
atomically, and the ledger's guarantees (one `stored` winner, one claim per
event, one download lease) rest on that. This wraps moto's WSGI app so that
DynamoDB calls (`X-Amz-Target: DynamoDB_*`) hold one lock; every other
service stays concurrent (SQS long polls must not block the rest).

    moto_serialized.py -H 127.0.0.1 -p 5000      (the options of moto_server)
"""
import argparse
import threading

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import run_simple

DYNAMODB = threading.Lock()


def serialize_dynamodb(app):
    def wrapped(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with DYNAMODB:
                # The whole answer is produced under the lock (moto answers
                # DynamoDB with one small body, never a stream).
                return list(app(environ, start_response))
        return app(environ, start_response)

    return wrapped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = DomainDispatcherApplication(create_backend_app)
    app.debug = True
    run_simple(args.host, args.port, serialize_dynamodb(app), threaded=True,
               request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
