from mktpred.cli.app import main

main()
