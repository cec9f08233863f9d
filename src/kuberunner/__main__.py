from kuberunner.cli import main

main()
