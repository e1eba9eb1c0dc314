from pachhook.cli import main

raise SystemExit(main())
