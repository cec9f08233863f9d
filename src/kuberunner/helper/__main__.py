"""``python -m kuberunner.helper``: the same commands as ``kuberunner-helper``."""

from kuberunner.helper.cli import main

main(prog_name="kuberunner-helper")
