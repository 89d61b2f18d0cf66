from lipbatch.cli import main

raise SystemExit(main())
