from zoo_cli.cli.app import main

main()
