# The r_job driver. The Python wrapper (wrapper/main.py) writes this file into the slot and
# runs it with Rscript. It runs the job's script one top-level expression at a time in the
# global environment, takes checkpoints, and tells the wrapper what happens, one line per
# event, on the status pipe:
#   progress F | checkpoint K I | resumed K I | checkpoint_ignored WHY | finished
# (K: the expression the script resumes at; I: the iteration of the innermost boinc_for,
# 0 between expressions.) Everything lives inside local() so that nothing of the driver is
# in the global environment, which is what a checkpoint saves.
local({
  CHECKPOINT_FORMAT <- "r_job checkpoint 1"

  option <- function(name) {
    prefix <- paste0("--", name, "=")
    args <- commandArgs(trailingOnly = TRUE)
    hit <- args[startsWith(args, prefix)]
    if (length(hit) != 1L) stop("driver: missing option --", name)
    substring(hit, nchar(prefix) + 1L)
  }

  script_path <- option("script")
  checkpoint_path <- option("checkpoint")
  result_path <- option("result")
  stdout_path <- option("stdout")
  seed <- as.integer(option("seed"))
  rng_kind <- option("rng-kind")
  period <- as.numeric(option("checkpoint-period"))
  status_con <- file(option("status-file"), open = "w", raw = TRUE)

  st <- new.env()  # the driver's own state, never checkpointed as such
  st$expr <- 0L           # the top-level expression being evaluated
  st$depth <- 0L          # how many boinc_for calls are active
  st$loops <- integer()   # per active boinc_for: the iteration being run
  st$pending <- NULL      # after a restore inside boinc_for: the loop positions to resume at
  st$pending_globals <- NULL
  st$progress <- NULL
  st$last_checkpoint <- proc.time()[["elapsed"]]

  notify <- function(...) {
    writeLines(paste(...), status_con)
    flush(status_con)
  }

  say <- function(...) cat(..., "\n", sep = "", file = stderr())

  innermost <- function(loops) if (length(loops)) loops[[length(loops)]] else 0L

  where <- function(k) {
    refs <- attr(exprs, "srcref")
    line <- if (!is.null(refs) && k <= length(refs)) refs[[k]][[1L]] else NA
    if (is.na(line)) sprintf("expression %d", k) else sprintf("expression %d (line %d)", k, line)
  }

  # ---- checkpoints -------------------------------------------------------------------------

  time_to_checkpoint <- function() {
    is.null(st$pending) && proc.time()[["elapsed"]] - st$last_checkpoint >= period
  }

  save_checkpoint <- function(next_expr, loops) {
    flush(out_con)
    state <- list(format = CHECKPOINT_FORMAT, script_md5 = script_md5, seed = seed,
                  rng_kind = rng_kind, next_expr = next_expr, loops = loops,
                  progress = st$progress, stdout_size = file.size(stdout_path),
                  session = session_state(),
                  globals = as.list(globalenv(), all.names = TRUE))
    tmp <- paste0(checkpoint_path, ".tmp")
    saved <- tryCatch({
      saveRDS(state, tmp)
      file.rename(tmp, checkpoint_path)
    }, error = function(e) {
      say("r_job: checkpoint not saved: ", conditionMessage(e))
      FALSE
    })
    st$last_checkpoint <- proc.time()[["elapsed"]]
    if (isTRUE(saved)) notify("checkpoint", next_expr, innermost(loops))
  }

  checkpoint_problem <- function(state) {
    if (inherits(state, "error")) return(paste("unreadable:", conditionMessage(state)))
    if (!is.list(state) || !identical(state$format, CHECKPOINT_FORMAT)) return("not an r_job checkpoint")
    if (!identical(state$script_md5, script_md5)) return("written for another script")
    if (!identical(state$seed, seed) || !identical(state$rng_kind, rng_kind)) return("written for another seed")
    k <- state$next_expr
    if (!is.numeric(k) || length(k) != 1L || k < 1 || k > length(exprs)) return("bad expression index")
    if (!is.integer(state$loops) || any(state$loops < 1L)) return("bad loop positions")
    if (!is.list(state$globals)) return("no global environment")
    if (!is.list(state$session) || !is.character(state$session$packages)) return("no session state")
    NULL
  }

  read_checkpoint <- function() {
    if (!file.exists(checkpoint_path)) return(NULL)
    state <- tryCatch(readRDS(checkpoint_path), error = function(e) e)
    problem <- checkpoint_problem(state)
    if (is.null(problem)) return(state)
    notify("checkpoint_ignored", gsub("[\r\n]+", " ", problem))
    unlink(checkpoint_path)
    NULL
  }

  # What a script may change besides the global environment: attached packages, options
  # and the working directory.
  session_state <- function() {
    current <- options()
    changed <- names(current)[!vapply(names(current), function(n)
      identical(current[[n]], baseline_options[[n]]), logical(1))]
    list(packages = sub("^package:", "", grep("^package:", search(), value = TRUE)),
         options = current[changed], wd = getwd())
  }

  restore_session <- function(session) {
    for (package in rev(session$packages)) {
      if (!paste0("package:", package) %in% search())
        suppressPackageStartupMessages(library(package, character.only = TRUE))
    }
    if (length(session$options)) options(session$options)
    if (dir.exists(session$wd)) setwd(session$wd)
  }

  restore_globals <- function(globals) {
    rm(list = ls(globalenv(), all.names = TRUE), envir = globalenv())
    list2env(globals, envir = globalenv())
    invisible()
  }

  # Output printed after the checkpoint will be printed again: drop it.
  truncate_stdout <- function(size) {
    if (!file.exists(stdout_path) || file.size(stdout_path) < size) {
      say("r_job: stdout.txt is shorter than at the checkpoint; earlier output is lost")
      return(invisible())
    }
    kept <- readBin(stdout_path, "raw", n = size)
    writeBin(kept, stdout_path)
  }

  # ---- the functions a job script may call ---------------------------------------------------

  boinc_progress <- function(fraction) {
    if (!is.numeric(fraction) || length(fraction) != 1L || is.na(fraction) ||
        fraction < 0 || fraction > 1)
      stop("boinc_progress(fraction): fraction must be one number between 0 and 1")
    st$progress <- as.numeric(fraction)
    notify("progress", format(st$progress, digits = 15))
    invisible(fraction)
  }

  loop_var_name <- function(var) {
    if (is.name(var)) return(as.character(var))
    if (is.character(var) && length(var) == 1L && nzchar(var)) return(var)
    stop("boinc_for(var, seq, body): var must be a variable name")
  }

  # Where a boinc_for at this depth starts: 1, or after a restore the saved position. At
  # the innermost saved loop the global environment is restored once more, which undoes
  # whatever the re-run code before the loop did (including to the RNG state).
  resume_start <- function(depth) {
    positions <- st$pending
    if (is.null(positions) || depth > length(positions)) return(1L)
    if (depth == length(positions)) {
      restore_globals(st$pending_globals)
      st$pending <- NULL
      st$pending_globals <- NULL
    }
    positions[[depth]]
  }

  enter_iteration <- function(depth, i, var_name, seq) {
    st$loops[depth] <- i
    if (time_to_checkpoint()) save_checkpoint(st$expr, st$loops[seq_len(depth)])
    assign(var_name, seq[[i]], envir = globalenv())
  }

  boinc_for <- function(var, seq, body) {
    var_name <- loop_var_name(substitute(var))
    body <- substitute(body)
    force(seq)
    depth <- st$depth + 1L
    start <- resume_start(depth)
    st$depth <- depth
    on.exit({
      st$depth <- depth - 1L
      st$loops <- st$loops[seq_len(depth - 1L)]
    })
    n <- length(seq)
    if (start > n) return(invisible(NULL))
    # A real for loop evaluated in the global environment, so that break and next work.
    index <- as.name(sprintf(".boinc_for_index_%d", depth))
    enter <- function(i) enter_iteration(depth, i, var_name, seq)
    iteration <- call("{", as.call(list(enter, index)), body)
    eval(call("for", index, seq.int(start, n), iteration), globalenv())
    if (exists(as.character(index), envir = globalenv(), inherits = FALSE))
      rm(list = as.character(index), envir = globalenv())
    invisible(NULL)
  }

  api <- new.env()
  api$boinc_progress <- boinc_progress
  api$boinc_for <- boinc_for
  attach(api, name = "r_job:api", warn.conflicts = FALSE)
  baseline_options <- options()

  # ---- running the script --------------------------------------------------------------------

  fail <- function(k, condition) {
    call <- conditionCall(condition)
    call_text <- if (is.null(call)) "" else paste0(" in ", paste(deparse(call, nlines = 1L), collapse = ""))
    say("Error", call_text, " at script.R ", where(k), ": ", conditionMessage(condition))
    quit(save = "no", status = 1L)
  }

  run_expression <- function(k) {
    withCallingHandlers(
      tryCatch({
        result <- withVisible(eval(exprs[[k]], globalenv()))
        if (result$visible) print(result$value)
        result$value
      }, error = function(e) fail(k, e)),
      warning = function(w) {
        say("Warning at script.R ", where(k), ": ", conditionMessage(w))
        invokeRestart("muffleWarning")
      })
  }

  script_md5 <- unname(tools::md5sum(script_path))
  exprs <- tryCatch(parse(script_path, keep.source = TRUE), error = function(e) {
    say("Error: script.R does not parse: ", conditionMessage(e))
    quit(save = "no", status = 1L)
  })

  RNGkind(kind = rng_kind)
  set.seed(seed)
  start <- 1L
  checkpoint <- read_checkpoint()
  resumed <- !is.null(checkpoint)
  if (resumed) {
    restore_globals(checkpoint$globals)
    tryCatch(restore_session(checkpoint$session), error = function(e) {
      say("Error: cannot restore the session of the checkpoint: ", conditionMessage(e))
      quit(save = "no", status = 1L)
    })
    start <- as.integer(checkpoint$next_expr)
    if (length(checkpoint$loops)) {
      st$pending <- checkpoint$loops
      st$pending_globals <- checkpoint$globals
    }
    truncate_stdout(checkpoint$stdout_size)
    notify("resumed", start, innermost(checkpoint$loops))
    if (!is.null(checkpoint$progress)) boinc_progress(checkpoint$progress)
    rm(checkpoint)
  }

  out_con <- file(stdout_path, open = if (resumed) "a" else "w")
  sink(out_con)
  value <- NULL
  for (k in seq_along(exprs)[seq_along(exprs) >= start]) {
    if (time_to_checkpoint()) save_checkpoint(k, integer())
    st$expr <- k
    value <- run_expression(k)
    if (!is.null(st$pending)) {
      say("r_job: warning: the checkpointed boinc_for was not reached again in ", where(k),
          "; the script went on from there")
      st$pending <- NULL
      st$pending_globals <- NULL
    }
  }
  while (sink.number() > 0L) sink()
  close(out_con)

  tmp <- paste0(result_path, ".tmp")
  saveRDS(value, tmp)
  if (!file.rename(tmp, result_path)) stop("driver: cannot write ", result_path)
  notify("finished")
  close(status_con)
  quit(save = "no", status = 0L)
})
