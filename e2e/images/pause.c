/*
 * The sandbox ("pause") process of every pod on the test node: it holds the pod's namespaces,
 * reaps orphans re-parented to it (it is PID 1 when the pod shares its process namespace) and
 * exits on SIGINT or SIGTERM. Built statically into a one-file image by e2e/images/build.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig) {
    (void)sig;
    _exit(0);
}

static void on_child(int sig) {
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(int argc, char **argv) {
    struct sigaction stop, child;
    if (argc > 1 && strcmp(argv[1], "-v") == 0) {
        puts("verity-pause 1");
        return 0;
    }
    if (getpid() != 1) {
        fputs("warning: pause is not PID 1 and will not reap orphans\n", stderr);
    }
    memset(&stop, 0, sizeof stop);
    stop.sa_handler = on_stop;
    memset(&child, 0, sizeof child);
    child.sa_handler = on_child;
    child.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0 ||
        sigaction(SIGCHLD, &child, NULL) < 0) {
        perror("sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
