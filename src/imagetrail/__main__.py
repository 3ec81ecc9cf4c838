from imagetrail.cli import main

raise SystemExit(main())
