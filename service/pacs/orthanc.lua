-- EchoCXR's hook for an Orthanc PACS: when a study is stable (no new instance for StableAge
-- seconds), tell the EchoCXR API, which pulls it by WADO-RS, drafts it and pushes the draft back.
-- It only notifies: the work runs on EchoCXR's workers, never in Orthanc's Lua thread.
--
-- Load it with "LuaScripts": ["/path/to/orthanc.lua"] and configure it in Orthanc's JSON:
--   "EchoCXR": {
--     "NotifyUrl": "http://echocxr-api:8000/v1/pacs/notify",
--     "ApiKey": "<the key `echocxr users add orthanc --role uploader` printed>"
--   }
-- A notification lost while the API is down is found again by `echocxr pacs poll`
-- (or ECHOCXR_PACS_POLL_INTERVAL_S).

function OnStableStudy(studyId, tags, metadata)
  local config = GetOrthancConfiguration()['EchoCXR']
  if config == nil or config['NotifyUrl'] == nil then
    print('EchoCXR: no "EchoCXR" section with NotifyUrl in the configuration; nothing notified')
    return
  end
  local body = DumpJson({ study_instance_uid = tags['StudyInstanceUID'] }, true)
  local headers = {
    ['Content-Type'] = 'application/json',
    ['Authorization'] = 'Bearer ' .. (config['ApiKey'] or '')
  }
  local ok = pcall(HttpPost, config['NotifyUrl'], body, headers)
  if not ok then
    print('EchoCXR: the notification of study ' .. studyId .. ' failed; a poll will find it')
  end
end
