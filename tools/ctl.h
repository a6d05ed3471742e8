/* `tern ctl`: a small QMP client (ctl.c). */
#ifndef TERN_TOOLS_CTL_H
#define TERN_TOOLS_CTL_H

/* ctl_main runs `tern ctl` with argv[0] = "ctl"; returns the exit status. */
int ctl_main(int argc, char **argv);

#endif /* TERN_TOOLS_CTL_H */
