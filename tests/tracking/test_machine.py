"""The machine's facts as runs and benchmarks record them, from /proc/cpuinfo."""

import platform

import pytest

from mnist_runner.tracking import machine

X86 = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t:       Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx512_bf16 amx_bf16

processor\t: 1
model name\t: a second processor's name, never reported
flags\t\t: fpu
"""
# Many ARM kernels name no model: the fields differ, "model name" is absent.
ARM = """\
processor\t: 0
BogoMIPS\t: 48.00
Features\t: fp asimd evtstrm

Hardware\t: BCM2835
"""


@pytest.fixture
def cpuinfo_text(tmp_path, monkeypatch):
    def write(text):
        path = tmp_path / "cpuinfo"
        path.write_text(text)
        monkeypatch.setattr(machine, "CPUINFO", path)

    return write


def test_the_first_processors_fields_are_read(cpuinfo_text):
    cpuinfo_text(X86)
    fields = machine.cpuinfo()
    assert fields["model name"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert fields["flags"].split() == ["fpu", "sse2", "avx512_bf16", "amx_bf16"]
    assert fields["processor"] == "0"
    assert machine.cpu_model() == "Intel(R) Xeon(R) Platinum 8480+"


def test_without_a_model_name_the_processor_is_what_platform_knows(cpuinfo_text):
    cpuinfo_text(ARM)
    assert "model name" not in machine.cpuinfo()
    assert machine.cpuinfo()["Hardware"] == "BCM2835"
    assert machine.cpu_model() == (platform.processor() or platform.machine())


def test_no_cpuinfo_at_all_is_no_fields(tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "CPUINFO", tmp_path / "absent")
    assert machine.cpuinfo() == {}
    assert machine.cpu_model() == (platform.processor() or platform.machine())
