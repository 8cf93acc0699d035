# Sourced by the start commands of cluster/aws.yaml and cluster/gcp.yaml on every node, right before
# `ray start`: Ray hands the environment of `ray start` to every worker process it spawns, so a secret exported
# here reaches the teacher's sampler actors and the job's driver without ever being written to a file or
# shown in a job's runtime_env (which the dashboard displays).
#   source ~/tinythinker-ray/cluster/node_env.sh aws|gcp
# Secrets that do not exist are skipped; only the teacher preset that uses the OpenAI API needs one.
#   OPENAI_API_KEY  <- aws: tinythinker/openai-api-key   gcp: tinythinker-openai-api-key
#   HF_TOKEN        <- aws: tinythinker/hf-token         gcp: tinythinker-hf-token      (gated hub models)
#   WANDB_API_KEY   <- aws: tinythinker/wandb-api-key    gcp: tinythinker-wandb-api-key (train.tracking)
#   MLFLOW_TRACKING_TOKEN <- aws: tinythinker/mlflow-tracking-token  gcp: tinythinker-mlflow-tracking-token
#   RAY_AUTH_TOKEN  <- aws: tinythinker/ray-auth-token   gcp: tinythinker-ray-auth-token
#                      (if present, Ray >= 2.60 token auth is turned on: RAY_AUTH_MODE=token on all nodes)

_tt_secret() {  # $1 = cloud, $2 = secret name; prints the value or fails quietly
  case "$1" in
    aws) python - "$2" <<'PY'
import sys, boto3, requests
region = requests.get("http://169.254.169.254/latest/meta-data/placement/region", timeout=2,
                      headers={"X-aws-ec2-metadata-token": requests.put(
                          "http://169.254.169.254/latest/api/token", timeout=2,
                          headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"}).text}).text
print(boto3.client("secretsmanager", region_name=region).get_secret_value(SecretId=sys.argv[1])["SecretString"])
PY
    ;;
    gcp) python - "$2" <<'PY'
import sys, google.auth
from google.cloud import secretmanager
_, project = google.auth.default()
name = f"projects/{project}/secrets/{sys.argv[1]}/versions/latest"
print(secretmanager.SecretManagerServiceClient().access_secret_version(name=name).payload.data.decode())
PY
    ;;
    *) return 1 ;;
  esac
}

_tt_cloud="${1:?usage: source node_env.sh aws|gcp}"
_tt_sep=$([ "$_tt_cloud" = aws ] && echo / || echo -)
for _tt_pair in OPENAI_API_KEY:openai-api-key HF_TOKEN:hf-token RAY_AUTH_TOKEN:ray-auth-token \
               WANDB_API_KEY:wandb-api-key MLFLOW_TRACKING_TOKEN:mlflow-tracking-token; do
  if _tt_value=$(_tt_secret "$_tt_cloud" "tinythinker${_tt_sep}${_tt_pair#*:}" 2>/dev/null) && [ -n "$_tt_value" ]; then
    export "${_tt_pair%%:*}=$_tt_value"
  fi
done
[ -n "${RAY_AUTH_TOKEN:-}" ] && export RAY_AUTH_MODE=token
unset _tt_cloud _tt_sep _tt_pair _tt_value
unset -f _tt_secret
