from recotorch.cli import main

main()
