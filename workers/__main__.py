from workers.cli.app import main

main()
