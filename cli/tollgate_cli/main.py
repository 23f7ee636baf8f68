def main() -> None:
    print("tollgate")
