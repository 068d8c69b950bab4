from flowhawk.cli import main

main()
