"""The campaign log: only between start and take, capped with the oldest lines dropped."""

from __future__ import annotations

import logging

from redstone_agent.master.campaign_log import CampaignLog


def test_collects_only_during_a_campaign_and_caps_its_size() -> None:
    handler = CampaignLog(max_bytes=400)
    logger = logging.getLogger("test.campaign_log")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("before the campaign")
        handler.start()
        for n in range(40):
            logger.info("line %02d of the campaign", n)
        text = handler.take()
        logger.info("after the campaign")
    finally:
        logger.removeHandler(handler)
    assert "before" not in text and "after" not in text
    assert "line 39 of the campaign" in text and "line 00" not in text
    assert text.startswith("[") and "earlier lines dropped]" in text.splitlines()[0]
    assert len(text.encode()) <= 400 + 64
    assert handler.take() == ""
