/* fate.c -- a job's fate from PromptLayer's answer (see fate.h's table). */
#include "model/fate.h"

#include "model/retry.h"

fate fate_of(const fate_in *in)
{
    switch (retry_classify(in->status, in->transient)) {
    case RETRY_DONE:
        return (fate){.kind = in->more_steps ? FATE_NEXT_STEP : FATE_DONE};
    case RETRY_AUTH:
        return (fate){.kind = FATE_AUTH_PAUSE};
    case RETRY_AGAIN:
        if (in->attempts >= in->max_attempts)
            return (fate){.kind = FATE_DEAD_ATTEMPTS};
        return (fate){.kind = FATE_RETRY, .slow_down = in->status == 429};
    case RETRY_NEVER:
        break;
    }
    return (fate){.kind = FATE_DEAD_REJECTED};
}

const char *fate_name(fate_kind k)
{
    static const char *const names[] = {"done",  "next_step",     "auth_pause",
                                        "retry", "dead_attempts", "dead_rejected"};
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}
