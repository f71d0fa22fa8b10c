/* The floor of the one-job benchmark in C: start `bash -e script.sh` with posix_spawnp and wait.
   Nothing else: no workflow, no record, no captured output. bench/run/bench.sh times it beside
   `pipe run` and the script itself. */
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

int main(void) {
    char *argv[] = {"bash", "-e", "script.sh", 0};
    pid_t pid;
    int status;
    if (posix_spawnp(&pid, "bash", 0, 0, argv, environ) != 0)
        return 127;
    if (waitpid(pid, &status, 0) < 0)
        return 127;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
