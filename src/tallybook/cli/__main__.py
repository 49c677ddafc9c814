from tallybook.cli.main import main

main()
