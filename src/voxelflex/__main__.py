from voxelflex.cli import main

raise SystemExit(main())
