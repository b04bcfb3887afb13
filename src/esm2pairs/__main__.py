from esm2pairs.cli import main

raise SystemExit(main())
