"""The tap controller: resolves a resource to its meshed pods, taps their proxies' ``Observe``
over mTLS, merges the streams under a rate limit and serves them to authorized callers."""
