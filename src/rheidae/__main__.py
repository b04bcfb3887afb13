from rheidae.cli import main

raise SystemExit(main())
