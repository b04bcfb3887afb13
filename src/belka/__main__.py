from belka.cli import main

raise SystemExit(main())
