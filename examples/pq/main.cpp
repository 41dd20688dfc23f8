// The pq command-line driver.
int main() { return 0; }
