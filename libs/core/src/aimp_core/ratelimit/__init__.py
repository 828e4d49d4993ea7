"""Exact, atomic rate limits shared by the gateway and the throttle service.

One Redis script call decides a call against every limit that applies to it
(GCRA rate and burst with an optional warm-up ramp, UTC daily and monthly
quotas, concurrency leases that expire) and consumes from all of them or from
none. The pure modules (:mod:`.calendar`, :mod:`.limits`, :mod:`.algorithm`,
:mod:`.policies`, :mod:`.headers`) take values and return values; the Python
mirror in :mod:`.algorithm` is the specification the Lua script in :mod:`.lua`
is tested against. The adapters (:mod:`.engine`, :mod:`.sync`) do the I/O.

Both services need the same algorithm and the same Redis layout, and services
may not import each other, so it lives here.
"""
