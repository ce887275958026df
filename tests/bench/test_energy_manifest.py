"""GPU energy from NVML's counter, the cost section of the config, and split hashes."""
import sys
import types

import pytest

from bench.config import RunConfig
from bench.errors import BenchError
from bench.resources import EnergyMeter
from fakes import toy_classification


def test_energy_is_none_on_cpu_and_the_counter_difference_on_cuda(monkeypatch):
    with EnergyMeter("cpu") as cpu:
        pass
    assert cpu.joules is None
    readings = iter([10_000, 12_500])  # millijoules, as NVML reports them
    fake = types.SimpleNamespace(nvmlInit=lambda: None, nvmlDeviceGetHandleByIndex=lambda i: "h",
                                 nvmlDeviceGetTotalEnergyConsumption=lambda h: next(readings))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    with EnergyMeter("cuda") as gpu:
        pass
    assert gpu.joules == pytest.approx(2.5)


def test_energy_without_nvml_is_unknown_not_zero(monkeypatch):
    def broken():
        raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(sys.modules, "pynvml", types.SimpleNamespace(nvmlInit=broken))
    with EnergyMeter("cuda") as meter:
        pass
    assert meter.joules is None


@pytest.mark.parametrize("cost, field", [({"hardware": "h1000"}, "cost.hardware"),
                                         ({"usd_per_hour": -1}, "cost.usd_per_hour"),
                                         ({"monthly_volumes": [100, "lots"]}, "cost.monthly_volumes"),
                                         ({"api_model": "gpt-9"}, "cost.api_model"),
                                         ({"price": 2}, "unknown key")])
def test_bad_cost_settings_name_the_field(cost, field):
    with pytest.raises(BenchError, match=field.replace(".", r"\.")):
        RunConfig(cost=cost)


def test_cost_settings_and_latency_sample_validate():
    cfg = RunConfig(cost={"hardware": "a10g", "usd_per_hour": 0.9, "monthly_volumes": [1000], "api_model": "gpt-4o"},
                    latency_sample=8)
    assert cfg.cost["hardware"] == "a10g" and cfg.latency_sample == 8
    with pytest.raises(BenchError, match="latency_sample"):
        RunConfig(latency_sample=-1)


def test_split_hashes_change_with_the_data_of_that_split_only():
    task = toy_classification()
    base = task.split_hashes()
    assert set(base) == {"train", "validation", "test"} and all(len(v) == 64 for v in base.values())
    edited = toy_classification()
    edited.test[0] = type(edited.test[0])(edited.test[0].id, edited.test[0].input + "!", edited.test[0].target)
    changed = edited.split_hashes()
    assert changed["test"] != base["test"] and changed["train"] == base["train"]
