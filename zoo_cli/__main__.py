from zoo_cli.cli import main

main()
