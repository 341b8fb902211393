"""Provider sandbox: impersonates Twilio (REST 2010-04-01) and SendGrid (v3) for tests, ``make run`` and benches.

See ``docs/sandbox.md``; tests use :func:`services.sandbox.testing.running_sandbox`.
"""
