# The PREDICT-GBM benchmark's container for this product: reads /mlcube_io0, writes /mlcube_io1
# (TumorPersonalizationLib/cohort/predict_gbm.py; docs/cohort.md). CPU only.
#
#   docker build -f docker/predict_gbm.Dockerfile -t tumorpersonalization-predict-gbm .
#   docker run --rm -v $PWD/patients:/mlcube_io0:ro -v $PWD/out:/mlcube_io1 tumorpersonalization-predict-gbm
#
# Extra arguments after the image name go to the cohort command (e.g. --workers 8, --method npe).
FROM python:3.12-slim
WORKDIR /opt/tumorpersonalization
COPY pyproject.toml README.md ./
COPY TumorPersonalizationLib ./TumorPersonalizationLib
COPY Resources ./Resources
# The package is installed into site-packages; its data (atlas, trained weights) stays here.
ENV TUMORPERSONALIZATION_RESOURCES=/opt/tumorpersonalization/Resources
# The CPU build of torch first, so that installing the package does not pull the CUDA one.
RUN pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir .
ENTRYPOINT ["python", "-m", "TumorPersonalizationLib.cohort.predict_gbm", "--fast"]
