"""An admission webhook over HTTPS (aiohttp): ``POST /`` takes an AdmissionReview v1 and
answers one; the decision is a pure function of the review (:mod:`.injector`,
:mod:`.validator`). An admin server reports decisions in ``/metrics``."""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from prometheus_client.core import CounterMetricFamily

from weft.controller.admin import render_metrics, start_admin
from weft.k8s.webhooks.admission import Review, ReviewError, Verdict, parse_review, response

log = logging.getLogger("weft.k8s.webhooks")

Decide = Callable[[Review], Awaitable[Verdict]]
MAX_BODY = 8 * 1024 * 1024


def tls_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context with the webhook's serving certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class Webhook:
    """Decodes reviews, asks ``decide``, counts outcomes, and encodes the answer."""

    def __init__(self, name: str, decide: Decide) -> None:
        self.name = name
        self.decide = decide
        self.outcomes: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        """``POST /``."""
        try:
            review = parse_review(await request.read())
        except ReviewError as exc:
            self.outcomes["bad_request"] += 1
            return web.json_response({"error": str(exc)}, status=400)
        verdict = await self.decide(review)
        outcome = "patched" if verdict.patch else "allowed" if verdict.allowed else "denied"
        self.outcomes[outcome] += 1
        name = (review.object.get("metadata") or {}).get("name") or "(generated name)"
        log.info(
            "%s %s %s/%s: %s%s",
            review.operation,
            review.kind,
            review.namespace,
            name,
            outcome,
            f" ({verdict.message})" if verdict.message else "",
        )
        for warning in verdict.warnings:
            log.warning("%s/%s: %s", review.namespace, name, warning)
        return web.Response(
            text=json.dumps(response(review.uid, verdict)), content_type="application/json"
        )

    def metrics(self) -> str:
        """``webhook_admissions_total{webhook, outcome}``."""
        family = CounterMetricFamily(
            "webhook_admissions",
            "Admission reviews answered, by outcome",
            labels=["webhook", "outcome"],
        )
        for outcome, count in sorted(self.outcomes.items()):
            family.add_metric([self.name, outcome], count)
        return render_metrics([family])


async def serve_webhook(
    webhook: Webhook,
    listen: tuple[str, int],
    admin: tuple[str, int],
    tls: ssl.SSLContext,
    stop: asyncio.Event,
) -> None:
    """Serve ``webhook`` over HTTPS on ``listen`` until ``stop`` is set."""
    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/", webhook.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, listen[0], listen[1], ssl_context=tls).start()
    admin_runner = await start_admin(*admin, webhook.metrics, lambda: True)
    log.info("%s webhook listening on %s:%d", webhook.name, *listen)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await admin_runner.cleanup()
