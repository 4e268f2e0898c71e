"""Idle conversations park their Lua flow state (limits.flow_idle_s): the coroutine is freed,
the saved state stays in the database, and the next message, timer or hand-back restores it.
A conversation whose customer has left is parked at once, whatever limits.flow_idle_s says
(unless it is 0: never).  The conversation must go on exactly as if it had never been parked:
the same texts are played against a server that parks (waiting until /metrics shows the run
parked) and one that never parks, with the flows' clock fixed, and the bot must say the same
things.  (A handed-off conversation parks too: test_agent.py.)"""

import asyncio
import os

from conftest import source_root
from redress_client import connect, fetch_metrics, metric_total, run, wait_metric

CLOCK = ("--flow.clock_start", "2026-11-20 10:00")
TEXTS = ["我在你们商城买的手机一直没发货，订单号12345678", "已经等了五天了", "希望尽快发货"]


def bot_texts(frames):
    return [f["text"] for f in frames if f.get("type") == "message" and f.get("from") == "bot"]


async def wait_parked(server):
    """Until /metrics shows no run in memory."""
    await wait_metric(server, "redress_flow_runs", 0)


async def play(server, park):
    c = await connect(server)
    await c.hello(customer_id="u-idle")
    said = bot_texts(c.frames) + bot_texts(await c.drain(0.5))
    for i, text in enumerate(TEXTS):
        if park:
            await wait_parked(server)
        _, frames = await c.say(f"m-{i}", text)
        said += bot_texts(frames) + bot_texts(await c.drain(0.8))
        if park:
            runs = metric_total(fetch_metrics(server.port), "redress_flow_runs")
            assert runs == 1, f"the run was not restored for the message: {runs}"
    await c.close()
    return said


def says_the_same(server_factory, parking_flags, play_fn):
    """play_fn against a server started with parking_flags (it parks) and against one that
    never parks: the bot must say the same things."""
    rules = ("--rules.dir", os.path.join(source_root(), "rules"))
    parking = server_factory(*rules, *CLOCK, *parking_flags)
    never = server_factory(*rules, *CLOCK, "--limits.flow_idle_s", "0")

    async def go():
        a = await play_fn(parking, True)
        b = await play_fn(never, False)
        assert len(a) >= len(TEXTS) + 1, f"the bot said too little: {a}"
        assert a == b, f"parked conversation diverged:\nparked: {a}\nnever:  {b}"
    run(go())


def test_parked_flow_goes_on_where_it_was(server_factory):
    says_the_same(server_factory, ("--limits.flow_idle_s", "1"), play)


async def play_leaving(server, park):
    """Each message from a new connection that resumes the conversation; the last one left."""
    c = await connect(server)
    await c.hello(customer_id="u-leaves")
    token, said = c.token, bot_texts(c.frames) + bot_texts(await c.drain(0.5))
    for i, text in enumerate(TEXTS):
        last = c.last_seq
        await c.close()
        if park:  # flow_idle_s is 60: only the customer's leaving can park it this soon
            await wait_parked(server)
        c = await connect(server)
        await c.resume(token, last)
        _, frames = await c.say(f"m-{i}", text)
        said += bot_texts(frames) + bot_texts(await c.drain(0.8))
        runs = metric_total(fetch_metrics(server.port), "redress_flow_runs")
        assert runs == 1, f"the conversation's run is not in memory while it talks: {runs}"
    await c.close()
    if not park:  # 0 = never: the run stays after the customer has left
        await asyncio.sleep(1.0)
        runs = metric_total(fetch_metrics(server.port), "redress_flow_runs")
        assert runs == 1, f"limits.flow_idle_s=0 parked a run: {runs}"
    return said


def test_a_left_conversation_parks_at_once(server_factory):
    says_the_same(server_factory, (), play_leaving)  # limits.flow_idle_s at its default, 60
