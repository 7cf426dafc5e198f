from vgbench.cli import main

raise SystemExit(main())
