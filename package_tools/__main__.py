from package_tools.cli import main

raise SystemExit(main())
