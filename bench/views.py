"""The bare endpoint the benchmark compares every SCIM request type against.

Mounted at ``/bench/ping`` only when ``BEEM_BENCH_ENDPOINT`` is on. It goes through the whole
middleware stack like a SCIM request but touches neither the database nor the cache, so its
throughput is the ceiling of Django + gunicorn on the machine.
"""

from django.http import HttpRequest, JsonResponse


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
