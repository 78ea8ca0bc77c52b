// Umbrella header of the drdc core library.
#pragma once

#include "drdc/analytic_runner.h"
#include "drdc/buffer.h"
#include "drdc/kernels.h"
#include "drdc/openvino.h"
#include "drdc/refiner.h"
#include "drdc/rng.h"
#include "drdc/runner.h"
#include "drdc/schedule.h"
#include "drdc/status.h"
#include "drdc/tensorrt.h"
#include "drdc/types.h"
