"""aimp-throttle: the store and admin API of throttle policies.

Policies are not enforced yet: neither this service nor the gateway applies
them to traffic. Enforcement (in the gateway, against Redis) is a later issue.
"""
