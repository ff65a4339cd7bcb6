#include "broker/util_net.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

void bg_util_nodelay(int fd)
{
    int one = 1;
    if (fd >= 0)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
