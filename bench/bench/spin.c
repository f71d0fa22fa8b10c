/* A sleep-free CPU loop for the A/A and slowdown simulation: `spin N` runs N iterations of
 * an integer recurrence the compiler cannot remove. */
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    volatile unsigned long x = 1;
    for (unsigned long i = 0; i < n; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    }
    return (int)(x & 0);
}
