"""The engine's settings are declared once (core/settings.py); the REST body and the LRR_ defaults are
derived from that declaration, so a default, a bound or a description cannot drift between them."""

from __future__ import annotations

import dataclasses

import pytest
from pydantic import ValidationError

from lrr_service.core import LRRSettings, SettingsError
from lrr_service.core.settings import setting_spec
from lrr_service.service.config import SESSION_SETTING_FIELDS, ServiceSettings
from lrr_service.service.schemas import SessionSettingsBody

DECLARED = [setting.name for setting in dataclasses.fields(LRRSettings)]


def test_every_declared_setting_is_a_body_field_and_an_lrr_variable_with_its_description() -> None:
    assert list(SESSION_SETTING_FIELDS) == DECLARED
    assert list(SessionSettingsBody.model_fields) == DECLARED
    for name in DECLARED:
        doc = setting_spec(name).doc
        assert SessionSettingsBody.model_fields[name].description == doc
        assert ServiceSettings.model_fields[name].description == doc
        assert SessionSettingsBody.model_fields[name].default is None  # omitted: the server's default
    assert ServiceSettings().session_defaults() == LRRSettings()  # the LRR_ defaults are the engine's


@pytest.mark.parametrize(
    "name", [n for n in DECLARED if setting_spec(n).ge is not None or setting_spec(n).gt is not None]
)
def test_a_value_beyond_a_bound_is_refused_by_the_engine_the_body_and_the_environment(name: str) -> None:
    spec = setting_spec(name)
    below = spec.ge - 1 if spec.ge is not None else spec.gt
    below = int(below) if spec.integer else float(below)
    with pytest.raises(SettingsError, match=name):
        LRRSettings(**{name: below})
    with pytest.raises(ValidationError, match=name):
        SessionSettingsBody(**{name: below})
    with pytest.raises(ValidationError, match=name):
        ServiceSettings(**{name: below})
