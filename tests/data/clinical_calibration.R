# Expected values for tests/test_clinical_calibration.py, from R's rms::val.prob.
# Run: Rscript tests/data/clinical_calibration.R   (R 4.2.2, rms 6.5.0 from Debian's r-cran-rms)
# Inputs: tests/data/clinical_calibration_inputs.csv (written by make_clinical_inputs.py).
suppressMessages(library(rms))
d <- read.csv("tests/data/clinical_calibration_inputs.csv")
keys <- c("Intercept", "Slope", "Eavg", "E90", "Emax", "S:z", "S:p", "Brier", "C (ROC)", "Dxy", "R2", "D",
          "D:Chi-sq", "U", "U:Chi-sq", "U:p", "Q")
for (name in unique(d$dataset)) {
  p <- d$p[d$dataset == name]
  y <- d$y[d$dataset == name]
  v <- suppressWarnings(val.prob(p, y, pl = FALSE))
  fit <- is.finite(qlogis(p))
  citl <- unname(coef(glm(y[fit] ~ offset(qlogis(p[fit])), family = binomial,
                          control = glm.control(epsilon = 1e-14, maxit = 100)))[1])
  cat(sprintf('    "%s": {', name))
  cat(paste(sprintf('"%s": %.15g', keys, v[keys]), collapse = ", "))
  cat(sprintf(', "CITL": %.15g},\n', citl))
}
# the smoothed curve itself: lowess(p, y, iter = 0) read back at each p (ties averaged)
p <- d$p[d$dataset == "ties"]; y <- d$y[d$dataset == "ties"]
s <- approx(lowess(p, y, iter = 0), xout = sort(unique(p)), ties = mean)$y
cat("ties smooth at sorted unique p:", sprintf("%.15g", s), "\n")
