from affectkit.cli import main

main()
