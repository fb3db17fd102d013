from backapp.cli.main import main

main()
