"""The bare endpoint the benchmark compares every SCIM request type against.

Mounted only when ``BEEM_BENCH_ENDPOINT`` is on, twice: at ``/scim/bench/ping``, where it goes
through the SCIM requests' middleware chain, and at ``/bench/ping``, through the admin UI's.
It touches neither the database nor the cache, so its throughput is the ceiling of the full
stack on the machine; ``bench/minimal.py`` serves the same view with no middleware at all.
"""

from django.http import HttpRequest, JsonResponse


def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
