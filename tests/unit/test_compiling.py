"""``NANOLM_COMPILE=1 make demo`` compiles its model only where a C++ compiler works;
elsewhere it falls back to eager training without a word (checked without compiling)."""

from __future__ import annotations

import shutil

from nanolm_lib.lab.compiling import can_compile_on_cpu, cpp_compiler
from nanolm_lib.lab.demo import compile_for_demo


def test_without_a_compiler_the_demo_trains_eagerly_and_quietly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no g++, clang++, c++
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("NANOLM_COMPILE", "1")
    assert cpp_compiler() is None
    assert can_compile_on_cpu() is None
    assert compile_for_demo("cpu", "cpu") is None
    assert capsys.readouterr() == ("", "")


def test_compiling_is_asked_for_and_only_for_the_cpu_presets_on_a_cpu(monkeypatch):
    monkeypatch.delenv("NANOLM_COMPILE", raising=False)  # off by default, compiler or not
    assert compile_for_demo("cpu", "cpu") is None
    monkeypatch.setenv("NANOLM_COMPILE", "1")
    for preset, device in (("smoke", "cpu"), ("seed-3090", "cpu"), ("cpu", "cuda"),
                           ("cpu-modern", "cuda")):
        assert compile_for_demo(preset, device) is None


def test_the_compiler_inductor_would_call_is_found_on_path(tmp_path, monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    found = cpp_compiler()
    assert found == (shutil.which("g++") or shutil.which("clang++"))
    fake = tmp_path / "my-c++"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CXX", str(fake))  # CXX comes first, as for Inductor
    assert cpp_compiler() == str(fake)
