from govcloud.cli.main import main

main()
